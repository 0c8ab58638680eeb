from ..cli import main

raise SystemExit(main(["live", *__import__("sys").argv[1:]]))
