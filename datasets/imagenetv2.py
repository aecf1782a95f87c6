import os

from e2mim_engine.data import DATASET_REGISTRY, CLASSNAMES_SOURCE, Datum, TestOnlyDataset, list_files
from e2mim_engine.errors import DataError


@DATASET_REGISTRY.register()
class ImageNetV2(TestOnlyDataset):
    """Test only. Folder <k> holds class k of classnames.txt (in file order)."""

    dataset_dir = "imagenetv2"
    template = "a photo of a {}."
    image_subdir = "imagenetv2-matched-frequency-format-val"
    layout = "imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg and imagenetv2/classnames.txt"
    source = ("imagenetv2-matched-frequency.tar.gz from https://github.com/modestyachts/ImageNetV2 "
              "(extracted into imagenetv2/); " + CLASSNAMES_SOURCE)

    def load_data(self, cfg):
        image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.image_dir = image_dir
        if not os.path.isdir(image_dir):
            raise self.missing(image_dir)
        classnames = self.classnames_map()
        items = []
        for label, (folder, cname) in enumerate(classnames.items()):
            class_dir = os.path.join(image_dir, str(label))
            if not os.path.isdir(class_dir):
                raise self.missing(class_dir)
            names = list_files(class_dir)
            if not names:
                raise DataError(f"ImageNetV2: the class folder {class_dir} has no images. The archive may be "
                                f"half-extracted: extract it again ({self.source}).")
            items += [Datum(os.path.join(class_dir, n), label, classname=cname) for n in names]
        return items
