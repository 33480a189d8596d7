"""tests/security builds its apps as tests/api does: the same fixtures, defined once there."""

from tests.api.conftest import _no_cookies_left, api, api_database, api_settings, fresh_api

__all__ = ["_no_cookies_left", "api", "api_database", "api_settings", "fresh_api"]
