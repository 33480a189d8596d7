"""The README's configuration table is the user's reference: it must list every setting the code reads."""

from backend.settings import Settings
from tests.support import REPO_ROOT


def test_readme_documents_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    variables = [f"AQPL_{name.upper()}" for name in Settings.model_fields]
    missing = [variable for variable in variables if f"`{variable}`" not in readme]
    assert missing == []


def test_readme_starts_with_the_two_quickstart_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    quickstart = readme.index("## Quickstart")
    run, test = readme.index("make run", quickstart), readme.index("make test", quickstart)
    assert run < test < readme.index("## Using it")
