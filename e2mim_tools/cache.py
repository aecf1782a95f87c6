"""e2mim-cache: what the image feature caches hold, and removing them.

    e2mim-cache info [--dir DIR]            one line per store (backbone, precision, transform,
                                            images, size) and the total size
    e2mim-cache clear [--dir DIR] [ID ...]  remove every store, or the stores named by id

The folder is the one runs use by default: $E2MIM_FEATURE_CACHE or ~/.cache/e2mim/features
(a run's DATALOADER.FEATURE_CACHE.DIR: pass it as --dir). Stores are described in
e2mim_engine.data.feature_cache. Clearing while runs are going is safe: a running process
keeps what it read, and writes new shards into a fresh folder.
"""
import argparse
import os
import shutil
import sys

from e2mim_engine.data.feature_cache import ENV_DIR, cache_root, folder_bytes, list_stores


def human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def _short_transform(t):
    t = " ".join(str(t).split()).replace("Compose( ", "").rstrip(" )")
    return t if len(t) <= 110 else t[:107] + "..."


def info(root):
    stores = list_stores(root)
    print(f"Feature cache {root}: {len(stores)} store(s), {human(folder_bytes(root))}")
    for s in stores:
        ident = s["identity"]
        what = "training views" if ident.get("views") else "evaluation"
        extra = "".join([f", {s['temp']} temp file(s) of unfinished writes" if s["temp"] else "",
                         f", {s['unreadable']} unreadable shard(s)" if s["unreadable"] else ""])
        print(f"  {s['id']}  {ident.get('backbone', '?')} {ident.get('precision', '?')} "
              f"{ident.get('device', '?')}  {what}: {s['entries']} entries in {s['shards']} shard(s), "
              f"{human(s['bytes'])}{extra}")
        print(f"      transform {_short_transform(ident.get('transform', '?'))}")
    return 0


def clear(root, ids):
    stores = {s["id"]: s for s in list_stores(root)}
    unknown = [i for i in ids if i not in stores]
    if unknown:
        print(f"error: no store {', '.join(unknown)} in {root} (`e2mim-cache info` lists them).", file=sys.stderr)
        return 2
    chosen = ids or list(stores)
    freed = 0
    for sid in chosen:
        freed += stores[sid]["bytes"]
        shutil.rmtree(stores[sid]["folder"], ignore_errors=True)
    print(f"Removed {len(chosen)} store(s) from {root}, {human(freed)} freed")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="e2mim-cache", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, helptext in (("info", "list the stores and their sizes"), ("clear", "remove stores")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--dir", default="", help=f"the cache folder (default: ${ENV_DIR} or ~/.cache/e2mim/features)")
        if name == "clear":
            s.add_argument("ids", nargs="*", help="store ids to remove (default: all)")
    a = p.parse_args(argv)
    root = cache_root(a.dir)
    if a.dir and os.path.exists(root) and not os.path.isdir(root):
        print(f"error: {root} is not a folder.", file=sys.stderr)
        return 2
    return info(root) if a.cmd == "info" else clear(root, a.ids)


if __name__ == "__main__":
    sys.exit(main())
