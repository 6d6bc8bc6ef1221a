"""Worker process for ``classes.folder_shapes``: reads a pickled (root, items) from stdin, writes the pickled list
of shapes (or Refused exceptions) to stdout. Started as ``python -m deployments.validation.shape_worker``."""

import pickle
import sys

from deployments.validation.classes import _shapes


def main() -> None:
    root, items = pickle.load(sys.stdin.buffer)
    pickle.dump(_shapes(root, items, lean=True), sys.stdout.buffer, protocol=5)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
