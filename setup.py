from setuptools import find_packages, setup

setup(
    name="rep3d-nnunet",
    version="0.1.0",
    description="Rep3D (spatially-adaptive gradient re-parameterisation for 3D large-kernel "
    "convolutions) as an nnU-Net v2 plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # plans_templates/ sits at the top level (users browse it) and ships inside the
    # package as rep3d_nnunet.plans_templates, so wheel installs carry it too
    packages=find_packages(include=["rep3d_nnunet", "rep3d_nnunet.*"]) + ["rep3d_nnunet.plans_templates"],
    package_dir={"rep3d_nnunet.plans_templates": "plans_templates"},
    package_data={"rep3d_nnunet.plans_templates": ["*.json"]},
    install_requires=[
        "nnunetv2>=2.8.1,<2.9",
        "torch>=2.4",  # torch.library.custom_op / register_autograd (the dwconv3d op)
        "dynamic-network-architectures>=0.4.4,<0.5",
        "batchgenerators>=0.25",
        "SimpleITK",
        "numpy",
        # statistics, tables and plots of `rep3d-nnunet benchmark report` and the analysis pictures
        "scipy",
        "matplotlib",
        # maintained UNETR blocks for the paper-faithful decoder
        "monai>=1.4",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout", "submitit>=1.5"],
        # `rep3d-nnunet benchmark run --slurm...` submits through submitit
        "benchmark": ["submitit>=1.5"],
    },
    entry_points={"console_scripts": ["rep3d-nnunet=rep3d_nnunet.cli:main"]},
)
