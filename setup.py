from setuptools import find_packages, setup

# Versions are pinned in constraints.txt (scripts/setup_env.sh installs with it); the ranges
# here say what the code needs, the constraints what every fresh machine gets.
setup(
    name="e2mim",
    version="0.1.0",
    description="E2MIM: prompt tuning for CLIP with a CoOp/Dassl-compatible engine",
    python_requires=">=3.9",
    # trainers/ and datasets/ keep CoOp's folder names but are installed under the project's
    # prefix (a top-level `datasets` would shadow Hugging Face's).
    package_dir={"e2mim_trainers": "trainers", "e2mim_datasets": "datasets"},
    packages=find_packages(include=["e2mim_engine", "e2mim_engine.*", "e2mim_clip", "e2mim_clip.*",
                                    "e2mim_tools", "e2mim_tools.*", "e2mim_dassl"])
    + ["e2mim_trainers", "e2mim_datasets"]
    + ["e2mim_datasets." + p for p in find_packages("datasets")],
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
        "matplotlib",  # plots
        "submitit",  # SLURM backend of the sweep runner
    ],
    extras_require={"test": ["pytest>=7", "import-linter>=2"]},
    entry_points={
        "console_scripts": [
            "e2mim-train = e2mim_tools.train:main",
            "e2mim-results = e2mim_tools.parse_results:main",
            "e2mim-plots = e2mim_tools.plots_cli:main",
            "e2mim-benchmark = e2mim_tools.benchmark:main",
            "e2mim-check-datasets = e2mim_tools.check_datasets:main",
            "e2mim-demo = e2mim_tools.demo:main",
            "e2mim-bench-imagenet-index = e2mim_tools.bench_imagenet_index:main",
            "e2mim-pretrain-tiny-clip = e2mim_tools.tiny_clip:pretrain_main",
            "e2mim-tiny-clip = e2mim_tools.tiny_clip:main",
            "e2mim-bench = e2mim_tools.bench:main",
            "e2mim-sweep = e2mim_tools.sweep.cli:main",
            "e2mim-cache = e2mim_tools.cache:main",
            "e2mim-study = e2mim_tools.study:main",
            "e2mim-doctor = e2mim_tools.doctor:main",
            "e2mim-parity = e2mim_tools.parity.cli:main",
        ],
    },
)
