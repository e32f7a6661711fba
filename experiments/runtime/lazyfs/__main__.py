from experiments.runtime.lazyfs.daemon import main

main()
