"""Files of a project under the storage dir: one uint8 image array and the checkpoints. NumPy only.

Layout: storage_dir/projects/<id>/images.npy holds uint8 (num_train + num_test, H, W, C), the
training rows first; an example's row is its dataset_index (train) or num_train + dataset_index
(test). Checkpoints live beside it in checkpoints/round_<nnn>.safetensors. A dataset a lead uploads
is kept in data_dir/uploads/project_<id>/, outside the import root (see `is_private`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from backend.errors import InvalidInput, Loc
from backend.models import Example, Project, Split
from backend.settings import Settings

IMAGES_FILE = "images.npy"
CHECKPOINTS_FOLDER = "checkpoints"


def project_dir(settings: Settings, project_id: int) -> Path:
    return settings.storage_dir / "projects" / str(project_id)


def images_path(settings: Settings, project_id: int) -> Path:
    return project_dir(settings, project_id) / IMAGES_FILE


def relative_to_storage(settings: Settings, path: Path) -> str:
    """How rows store a file: relative to the storage dir, so the data dir can move."""
    return path.relative_to(settings.storage_dir).as_posix()


def checkpoint_path(settings: Settings, project_id: int, round_number: int) -> Path:
    return project_dir(settings, project_id) / CHECKPOINTS_FOLDER / f"round_{round_number:03d}.safetensors"


def staged_weights_path(settings: Settings, project_id: int, round_number: int) -> Path:
    """Trained but not yet evaluated weights of a round: evaluation turns them into the checkpoint."""
    return (
        project_dir(settings, project_id)
        / CHECKPOINTS_FOLDER
        / f"round_{round_number:03d}.trained.safetensors"
    )


def reference_path(settings: Settings, project_id: int) -> Path:
    """The project's reference classifier F_o (Eq. 7), trained at pretraining when the project asks."""
    return project_dir(settings, project_id) / CHECKPOINTS_FOLDER / "reference.safetensors"


def corruption_cache_dir(settings: Settings) -> Path:
    return settings.storage_dir / "corruptions"


def write_images(settings: Settings, project_id: int, images: npt.NDArray[np.uint8]) -> Path:
    """Write the project's image array atomically (a re-run import replaces it whole)."""
    path = images_path(settings, project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".images.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_images(settings: Settings, project: Project, *, writable: bool = False) -> npt.NDArray[np.uint8]:
    """All images of the project, memory-mapped: (num_train + num_test, H, W, C) uint8.

    Read-only by default. writable=True maps copy-on-write: pages are read lazily like the
    read-only map, writes stay in memory (torch wants writable arrays to share them without a copy).
    """
    images: npt.NDArray[np.uint8] = np.load(
        images_path(settings, project.id), mmap_mode="c" if writable else "r", allow_pickle=False
    )
    return images


def example_row(project: Project, example: Example) -> int:
    return (
        example.dataset_index if example.split == Split.train else project.num_train + example.dataset_index
    )


def example_image(settings: Settings, project: Project, example: Example) -> npt.NDArray[np.uint8]:
    """One image, (H, W, C) uint8."""
    return np.array(load_images(settings, project)[example_row(project, example)])


def import_root(settings: Settings) -> Path:
    root = settings.import_root
    assert root is not None  # filled by Settings' validator
    return root.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def is_private(settings: Settings, resolved: Path) -> bool:
    """Whether `resolved` (absolute, links resolved) is the platform's own, which no import may read:
    every project's upload, storage, the broker's messages, and the data dir's own files (the
    database, the secret key). They matter when the import root contains the data dir; with the
    default import root (data_dir/imports) they are outside it anyway.
    """
    folders = (uploads_root(settings), settings.storage_dir, settings.broker_dir)
    if any(_inside(resolved, folder.resolve()) for folder in folders):
        return True
    data_dir = settings.data_dir.resolve()
    return resolved == data_dir or (resolved.parent == data_dir and not resolved.is_dir())


def resolve_import_path(settings: Settings, raw: str, *, loc: Loc | None = None) -> Path:
    """`raw` as an absolute path inside the import root (after symlinks and '..'), else InvalidInput
    (at `loc`: where the request gave the path). Messages name no server path, and the platform's own
    files (another project's upload among them) get the message of a path that does not exist."""
    root = import_root(settings)
    try:
        candidate = Path(raw).expanduser()
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = candidate.resolve()
    except (ValueError, OSError, RuntimeError) as error:  # a NUL byte, a symlink loop, no home dir
        message = str(error).replace(str(root), "<import root>")
        raise InvalidInput(f"dataset path {raw!r} is not a usable path: {message}", loc=loc) from error
    if not _inside(resolved, root):
        raise InvalidInput(
            f"dataset path {raw!r} is outside the import root: copy the data under it "
            "(or set AQPL_IMPORT_ROOT) and give a path inside it",
            loc=loc,
        )
    if is_private(settings, resolved) or not resolved.exists():
        raise InvalidInput(f"dataset path {raw!r} does not exist under the import root", loc=loc)
    return resolved


def uploads_root(settings: Settings) -> Path:
    """The data dir's own uploads folder: outside the import root, so no dataset path reaches it."""
    return settings.data_dir / "uploads"


def uploads_dir(settings: Settings, project_id: int) -> Path:
    """Where a project's uploaded dataset is kept, bound to the project: only its upload writes here."""
    return uploads_root(settings) / f"project_{project_id}"


# How responses name an uploaded dataset: not a path under the import root, and not a server path.
UPLOAD_PREFIX = "upload:"


def shown_dataset_path(settings: Settings, project_id: int, stored: str | None) -> str | None:
    """A project's dataset path as responses show it: relative to the import root, or UPLOAD_PREFIX
    and the path inside the project's upload; never an absolute server path."""
    if stored is None:
        return None
    path, root = Path(stored), import_root(settings)
    folder = uploads_dir(settings, project_id).resolve()
    if _inside(path, folder):  # first: an import root that contains the data dir contains it too
        return UPLOAD_PREFIX + path.relative_to(folder).as_posix()
    if _inside(path, root):
        return path.relative_to(root).as_posix()
    return path.name  # the import root moved since the project was made: the name alone


def save_upload(settings: Settings, project_id: int, filename: str, stream: BinaryIO) -> Path:
    """Store an uploaded .npz (as is) or .zip (unpacked to a folder tree); returns the dataset path.

    Size limits are the request's (settings.max_upload_bytes); zip entries may not leave the folder.
    """
    suffix = Path(filename).suffix.lower()
    if suffix not in (".npz", ".zip"):
        raise InvalidInput(f"{filename}: upload a .npz file or a .zip of class folders")
    folder = uploads_dir(settings, project_id)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        return _store_upload(settings, folder, filename, suffix, stream)
    except BaseException:
        discard_upload(settings, project_id)  # a refused upload leaves no file behind
        raise


def discard_upload(settings: Settings, project_id: int) -> None:
    shutil.rmtree(uploads_dir(settings, project_id), ignore_errors=True)


def _store_upload(settings: Settings, folder: Path, filename: str, suffix: str, stream: BinaryIO) -> Path:
    archive = folder / f"upload{suffix}"
    with archive.open("wb") as target:
        shutil.copyfileobj(stream, target, length=1 << 20)
    if suffix == ".npz":
        return archive
    tree = folder / "tree"
    try:
        with zipfile.ZipFile(archive) as handle:
            # Declared sizes bound what zipfile writes: a bomb is refused before anything is unpacked.
            unpacked = sum(member.file_size for member in handle.infolist())
            if unpacked > settings.max_upload_bytes:
                raise InvalidInput(
                    f"{filename}: unpacks to {unpacked} bytes, more than the {settings.max_upload_bytes} "
                    "allowed (AQPL_MAX_UPLOAD_BYTES)"
                )
            for member in handle.infolist():
                target_path = (tree / member.filename).resolve()
                if tree.resolve() not in target_path.parents and target_path != tree.resolve():
                    raise InvalidInput(f"{filename}: entry {member.filename!r} points outside the archive")
            tree.mkdir()
            handle.extractall(tree)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        # Corrupt or truncated data, an unknown compression, a password, a name the disk refuses
        # (whose message names the server path: it is cut to the path inside the archive).
        reason = str(error).replace(f"{tree}/", "").replace(str(folder), "")
        raise InvalidInput(f"{filename}: not a readable zip file ({reason})") from error
    finally:
        archive.unlink(missing_ok=True)
    entries = [entry for entry in tree.iterdir() if not entry.name.startswith((".", "__MACOSX"))]
    # A zip of one top folder (the usual "compress folder"): its content is the tree.
    if len(entries) == 1 and entries[0].is_dir():
        nested = [entry for entry in entries[0].iterdir() if entry.is_dir()]
        if nested:
            return entries[0]
    return tree
