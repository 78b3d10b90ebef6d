"""`python -m sim.report RUN` still works: the report moved to `harness.report` (the world keeps no harness code)."""

if __name__ == "__main__":
    import sys

    from harness.report import main

    sys.exit(main())
