import os

from e2mim_engine.data import DATASET_REGISTRY, Datum, ZooDataset
from e2mim_engine.errors import DataError


@DATASET_REGISTRY.register()
class FGVCAircraft(ZooDataset):
    """Official split files; no JSON (CoOp reads the .txt files on every run)."""

    dataset_dir = "fgvc_aircraft"
    template = "a photo of a {}, a type of aircraft."
    image_subdir = "images"
    split_file = ""
    required = ("images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                "images_variant_test.txt")
    layout = "fgvc_aircraft/{images/*.jpg, variants.txt, images_variant_{train,val,test}.txt}"
    source = ("fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/; keep its "
              "data/ folder and rename it to fgvc_aircraft/")
    split_note = "official (images_variant_*.txt)"

    def make_split(self, cfg):
        with open(self.path("variants.txt")) as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_variant_file(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))

    def read_variant_file(self, cname2lab, filename):
        filepath = self.path(filename)
        items = []
        with open(filepath) as f:
            for n, line in enumerate(f, 1):
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                classname = " ".join(parts[1:])
                if classname not in cname2lab:
                    raise DataError(f"{filepath}, line {n}: variant {classname!r} is not in "
                                    f"{self.path('variants.txt')}.")
                items.append(Datum(os.path.join(self.image_dir, parts[0] + ".jpg"), cname2lab[classname],
                                   classname=classname))
        return items
