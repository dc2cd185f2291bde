"""``python -m dataset.synthetic``: see :mod:`dataset.synthetic.cli`."""

from .cli import main

if __name__ == "__main__":
    main()
