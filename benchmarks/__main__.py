from benchmarks.run import main

if __name__ == "__main__":  # worker processes (map_processes=True) may import this
    raise SystemExit(main())
