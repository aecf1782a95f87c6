from setuptools import find_packages, setup

setup(
    name="e2mim",
    version="0.1.0",
    description="E2MIM: prompt tuning for CLIP with a CoOp/Dassl-compatible engine",
    python_requires=">=3.9",
    # Only the engine is installed. trainers/ and datasets/ are used from the repository
    # root, as in CoOp; installing a top-level `datasets` would shadow Hugging Face's.
    packages=find_packages(include=["e2mim_engine", "e2mim_engine.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "clip-anytorch>=2.5",
        # `import clip` needs pkg_resources, removed from setuptools 82.
        "setuptools<82",
        "yacs>=0.1.8",
        "tabulate",
        "tqdm",
        "tensorboard",
        "scikit-learn",
        "numpy",
        "pillow",
        "scipy",
        "matplotlib",  # scripts/plots.py
    ],
    extras_require={"test": ["pytest>=7"]},
)
