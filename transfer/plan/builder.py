"""What a family expander is given: the plan's checked settings, and the nets and data sets made so far.

Families (transfer/plan/families.py) declare data sets (`Builder.dataset`, with their kind) and nets
(`Builder.add` and its shorthands). `Builder.replicate` then adds the plan's further seeded runs.
"""
from __future__ import annotations

from dataclasses import replace

from ..core.errors import TransferError
from .datasets import WHOLE, DatasetFiles, DatasetSpec, Kind
from .model import Net, NetFiles
from .rundir import RunDir
from .spec import Block, SolverSpec, read_dirs, read_model, read_solver


def base_name(dataset: str) -> str:
    return f"base-{dataset}"


def replicate_name(name: str, replicate: int) -> str:
    """A further seeded run's name: `base-manmade-r1` (the first run keeps the plain name)."""
    return name if replicate == 0 else f"{name}-r{replicate}"


class Builder:
    """Collects the data sets and nets of a plan while the family expanders run."""

    def __init__(self, top: Block, whole_classes: int | None):
        self.path = top.path
        self.plan_name = top.name("name")
        self.dirs = read_dirs(top, self.plan_name)
        self.model = read_model(top.block("model"))
        self.replicates = top.integer("replicates", lo=1, default=1)
        solver = read_solver(top.block("solver"))
        self.schedules: dict[str, SolverSpec] = {"default": solver}
        schedules = top.block("schedules", required=False)
        for sname in schedules.keys(safe=True):
            self.schedules[sname] = read_solver(schedules.block(sname), base=solver)
        block = top.block("datasets")
        self.declared = {ds: block.integer(ds, lo=1) for ds in block.keys(safe=True)}
        whole = self.declared.get(WHOLE, whole_classes)
        self.datasets: dict[str, DatasetSpec] = {WHOLE: DatasetSpec(WHOLE, Kind.WHOLE, whole)}
        self.nets: list[Net] = []

    # ------------------------------------------------------------------------------ data sets

    def dataset(self, spec: DatasetSpec, where: str) -> DatasetSpec:
        """Declare a data set a family uses. Its label count must agree with `datasets:` where both give
        one; a name used twice must mean the same set (`where` names the YAML key that uses it)."""
        declared = self.declared.get(spec.name)
        if spec.classes is None:
            if declared is None:
                raise TransferError(f"{self.path}: {where}: dataset '{spec.name}' is not declared under "
                                    f"'datasets' (name: number of labels)")
            spec = replace(spec, classes=declared)
        elif declared is not None and declared != spec.classes:
            raise TransferError(f"{self.path}: datasets.{spec.name}: {declared} labels declared, but {where} "
                                f"makes it a set of {spec.classes}")
        known = self.datasets.get(spec.name)
        if known is not None and known != spec:
            raise TransferError(f"{self.path}: {where}: dataset '{spec.name}' is already {known.describe()}; "
                                f"here it would be {spec.describe()}")
        self.datasets[spec.name] = spec
        return spec

    def whole_classes(self, where: str) -> int:
        classes = self.datasets[WHOLE].classes
        if classes is None:
            raise TransferError(f"{self.path}: {where}: needs the whole set's class count: declare "
                                f"'{WHOLE}: N' under 'datasets'")
        return classes

    def classes_of(self, dataset: str, net_name: str) -> int:
        spec = self.datasets.get(dataset)
        if spec is None and dataset in self.declared:
            raise TransferError(f"{self.path}: net '{net_name}': no experiment family says what dataset "
                                f"'{dataset}' is (a family declares each set it uses: Builder.dataset)")
        if spec is None or spec.classes is None:
            raise TransferError(f"{self.path}: net '{net_name}': dataset '{dataset}' is not declared "
                                f"under 'datasets'")
        return spec.classes

    # ------------------------------------------------------------------------------ nets

    def fc8(self, classes: int, net_name: str) -> int:
        out = self.model.fc8_outputs
        if out == "classes":
            return classes
        if out < classes:
            raise TransferError(f"{self.path}: net '{net_name}': model.fc8_outputs={out!r} cannot hold "
                                f"the {classes} classes of its training set")
        return int(out)

    def files(self, name: str, target: str, val: str, mean: str) -> NetFiles:
        """A net's generated files, and the databases it reads (a view reads its parent's)."""
        d = self.dirs
        tv, vv = self.datasets[target], self.datasets[val]
        train_from = tv.parent if tv.view and tv.parent else target
        val_from = vv.parent if vv.view and vv.parent else val
        return NetFiles(train_net=d.nets / f"{name}.train.prototxt", test_net=d.nets / f"{name}.test.prototxt",
                        solver=d.solvers / f"{name}.solver.prototxt",
                        train_data=DatasetFiles.under(d.data, train_from).train,
                        val_data=DatasetFiles.under(d.data, val_from).val,
                        mean=DatasetFiles.under(d.data, mean).mean,
                        train_labels=DatasetFiles.under(d.data, target).labels if tv.view else None,
                        val_labels=DatasetFiles.under(d.data, val).labels if vv.view else None)

    def run_dir(self, name: str, max_iter: int, files: NetFiles) -> RunDir:
        """A net's run directory, which copies (and checks it holds the definition of) its files."""
        return RunDir(self.dirs.runs / name, name, max_iter, (files.train_net, files.test_net, files.solver))

    def add(self, *, name: str, treatment: str, family: str, target: str, split: str | None = None,
            source: str | None = None, n: int | None = None, base: str | None = None,
            frozen: int = 0, copied: int = 0, schedule: str = "default",
            val_dataset: str | None = None, mean_dataset: str | None = None,
            released_name: str | None = None, replicate: int = 0, group: str | None = None) -> Net:
        classes = self.classes_of(target, name)
        if schedule not in self.schedules:
            raise TransferError(f"{self.path}: net '{name}': schedule '{schedule}' is not declared "
                                f"under 'schedules'")
        val_ds, mean_ds = val_dataset or target, mean_dataset or target
        solver = self.schedules[schedule]
        files = self.files(name, target, val_ds, mean_ds)
        net = Net(name=name, treatment=treatment, family=family, split=split, source=source, target=target,
                  val_dataset=val_ds, mean_dataset=mean_ds, n=n, base=base, frozen=frozen, copied=copied,
                  num_classes=classes, fc8_outputs=self.fc8(classes, name), schedule=schedule, solver=solver,
                  released_name=released_name, files=files, run=self.run_dir(name, solver.max_iter, files),
                  replicate=replicate, group=group or name)
        self.nets.append(net)
        return net

    def add_base(self, dataset: str, family: str, split: str | None, released: str | None,
                 replicate: int = 0, group: str | None = None) -> Net:
        return self.add(name=base_name(dataset), treatment="base", family=family, target=dataset,
                        split=split, released_name=released, replicate=replicate, group=group)

    def add_copy(self, source: str, target: str, n: int, finetune: bool, family: str, split: str | None,
                 released: str | None, replicate: int = 0, group: str | None = None) -> Net:
        treatment = ("selffer" if source == target else "transfer") + ("_ft" if finetune else "")
        name = f"{source}-{n}-{target}" + ("-ft" if finetune else "")
        # A transfer net subtracts the mean of its base net's training set (released behaviour).
        return self.add(name=name, treatment=treatment, family=family, target=target, split=split,
                        source=source, n=n, base=base_name(source), frozen=0 if finetune else n,
                        copied=n, mean_dataset=source, released_name=released, replicate=replicate,
                        group=group)

    # ------------------------------------------------------------------------------ replicates

    def replicate(self) -> None:
        """Add replicates 1..K-1 of every net whose weights do not come, through its bases, from a
        random split (those are replicated by more splits, as the paper's four): the same net under
        another name (`-rN`), copying from its base's replicate N; Caffe seeds each run itself."""
        if self.replicates == 1:
            return
        by_name = {n.name: n for n in self.nets}

        def from_split(net: Net) -> bool:
            while net is not None:
                if net.family == "random_split":
                    return True
                net = by_name.get(net.base) if net.base else None
            return False

        firsts = [n for n in self.nets if not from_split(n)]
        for r in range(1, self.replicates):
            for net in firsts:
                name = replicate_name(net.name, r)
                files = self.files(name, net.target, net.val_dataset, net.mean_dataset)
                self.nets.append(replace(
                    net, name=name, base=replicate_name(net.base, r) if net.base else None,
                    released_name=None, replicate=r, group=net.group, files=files,
                    run=self.run_dir(name, net.max_iter, files)))
