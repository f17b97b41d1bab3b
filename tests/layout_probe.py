"""Run as ``python -m tests.layout_probe load NAME...`` or ``... exceptions NAME...``, from
the repository root, by ``tests/test_layout.py`` (a fresh interpreter per question).

``load``: imports each NAME (a package: with every module in it) and prints, as JSON, the
names in ``sys.modules`` afterwards. ``exceptions``: the same imports, then prints every
exception class defined in those packages: its module, name and the ``module.name`` of each
class it derives from.
"""
import importlib
import json
import pkgutil
import sys


def load(names: list) -> None:
    for name in names:
        module = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
            importlib.import_module(info.name)


def subclasses(cls: type) -> list:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(subclasses(sub))
    return found


def main(argv: list) -> None:
    mode, names = argv[0], argv[1:]
    load(names)
    if mode == "load":
        print(json.dumps(sorted(sys.modules)))
        return
    ours = [cls for cls in set(subclasses(BaseException))
            if cls.__module__.split(".")[0] in names]
    rows = [{"module": cls.__module__, "name": cls.__qualname__,
             "bases": [f"{base.__module__}.{base.__qualname__}" for base in cls.__mro__[1:]]}
            for cls in ours]
    print(json.dumps(sorted(rows, key=lambda row: (row["module"], row["name"]))))


if __name__ == "__main__":
    main(sys.argv[1:])
