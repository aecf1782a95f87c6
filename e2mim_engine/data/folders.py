"""Reading a dataset's folders: sorted listings, the cached index of ImageNet-style class
folders, hints for a path that is not where expected, and ImageNet's classnames.txt."""
import difflib
import errno
import json
import os
from collections import OrderedDict

from ..errors import DataError, StorageError
from ..utils import atomic_write, logger, read_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# The file that names the ImageNet classes ("nXXXXXXXX class name" per line), shared by the variants.
CLASSNAMES_SOURCE = ("classnames.txt from CoOp's DATASETS.md (ImageNet section; the names come from "
                     "CLIP's Prompt_Engineering_for_ImageNet notebook)")


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is(entry, kind):
    """entry.is_dir() / is_file() following symlinks; a symlink that loops (or points into a
    loop) is a DataError naming it, not an OSError from deep inside a loader."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{entry.path} is a symbolic link that loops ({e.strerror}): remove it or point it "
                            f"to a real folder or image.") from None
        raise


def list_class_folders(path, ignored=()):
    """Visible sub-folders of ``path`` (symlinks to folders included), sorted case-sensitively."""
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".") and e.name not in ignored and _is(e, "dir")]
    names.sort()
    return names


def list_files(path, images_only=False):
    """Visible files of a folder, sorted (``images_only``: by extension, see IMAGE_EXTENSIONS)."""
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".") and (not images_only or is_image_file(e.name))
                 and _is(e, "file")]
    names.sort()
    return names


def layout_hint(path):
    """A hint for a missing path: a similarly named entry next to it, or the same name one
    level down (an archive extracted into an extra folder). Empty string if nothing found."""
    parent, name = os.path.split(os.path.normpath(path))
    if not name or not os.path.isdir(parent):
        return ""
    try:
        entries = [e for e in os.listdir(parent) if not e.startswith(".")]
    except OSError:
        return ""
    for e in entries:
        if e != name and e.lower() == name.lower():
            return f" Found '{os.path.join(parent, e)}' instead: names are case-sensitive, rename it to '{name}'."
    for e in sorted(entries)[:50]:
        deeper = os.path.join(parent, e, name)
        if os.path.isdir(os.path.join(parent, e)) and os.path.exists(deeper):
            return (f" Found '{deeper}' one level too deep: move the contents of '{os.path.join(parent, e)}' "
                    f"up into '{parent}' (the archive was extracted into an extra folder).")
    close = difflib.get_close_matches(name, entries, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{os.path.join(parent, close[0])}'?"
    return ""


# ---- ImageNet's class names ------------------------------------------------------------------
def read_classnames(text_file):
    """ImageNet's classnames.txt: ``<folder> <class name with spaces>`` per line -> OrderedDict."""
    classnames = OrderedDict()
    with open(text_file) as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            if len(parts) < 2:
                raise DataError(f"{text_file}, line {n}: expected '<folder> <class name>', got {line.strip()!r}.")
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def find_classnames_file(dataset_dir, root):
    """``<dataset_dir>/classnames.txt``, else the one in a sibling ``imagenet/`` folder; None if neither."""
    for path in (os.path.join(dataset_dir, "classnames.txt"), os.path.join(root, "imagenet", "classnames.txt")):
        if os.path.isfile(path):
            return path
    return None


# ---- a cached listing of class folders (ImageNet: 1.28 M files) ---------------------------
INDEX_FORMAT = "e2mim-folder-index"
INDEX_VERSION = 1


def _folder_state(split_dir):
    folders = list_class_folders(split_dir)
    return folders, [os.stat(os.path.join(split_dir, f)).st_mtime_ns for f in folders]


def index_class_folders(base_dir, splits, cache_path, progress=True):
    """List ``base_dir/<split>/<class folder>/<files>`` for each split, sorted.

    Returns {split: [(folder, [file names]), ...]}. The listing is cached as JSON in
    ``cache_path`` (file names relative to their class folder, so the cache moves with the
    data) and reused while every split has the same class folders with the same
    modification times: a later run makes one stat per class folder, not one per file.
    Adding or removing files in a class folder changes its mtime and rebuilds the index.
    """
    states = {s: _folder_state(os.path.join(base_dir, s)) for s in splits}
    cached = None
    if os.path.isfile(cache_path):
        try:
            data = read_json(cache_path)
            if data.get("format") == INDEX_FORMAT and data.get("version") == INDEX_VERSION and all(
                    data["splits"][s]["folders"] == states[s][0] and data["splits"][s]["mtime_ns"] == states[s][1]
                    for s in splits):
                cached = {s: list(zip(states[s][0], data["splits"][s]["files"])) for s in splits}
        except (ValueError, KeyError, TypeError, OSError):
            cached = None
        if cached is None:
            logger.info(f"The index {cache_path} is out of date; rebuilding it")
    if cached is not None:
        logger.info(f"Read the image index from {cache_path}")
        return cached
    from tqdm import tqdm
    total = sum(len(states[s][0]) for s in splits)
    out, payload = {}, {"format": INDEX_FORMAT, "version": INDEX_VERSION, "splits": {}}
    with tqdm(total=total, desc=f"Indexing {base_dir} (first run only)", unit="folder",
              disable=not progress) as bar:
        for s in splits:
            split_dir = os.path.join(base_dir, s)
            folders, mtimes = states[s]
            files = []
            for folder in folders:
                files.append(list_files(os.path.join(split_dir, folder)))
                bar.update(1)
            out[s] = list(zip(folders, files))
            payload["splits"][s] = {"folders": folders, "mtime_ns": mtimes, "files": files}
    try:
        atomic_write(cache_path, lambda f: json.dump(payload, f, separators=(",", ":")))
        logger.info(f"Saved the image index to {cache_path}")
    except StorageError as e:
        logger.info(f"Note: the image index is kept in memory for this run and rebuilt next time ({e})")
    return out
