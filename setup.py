from setuptools import find_packages, setup

setup(
    name="transfer",
    version="0.1.0",
    description="Caffe-faithful reproduction of 'How transferable are features in deep neural networks?'",
    packages=find_packages(include=["transfer", "transfer.*"]),
    package_data={"transfer": ["plans/*.yaml", "speeds/*.yaml"]},
    python_requires=">=3.11",
    install_requires=["numpy", "protobuf", "lmdb", "pillow", "matplotlib", "PyYAML",
                      "opencv-python-headless"],
    entry_points={"console_scripts": ["transfer = transfer.cli:main"]},
)
