from nodeboot.cli import main

main()
