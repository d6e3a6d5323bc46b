from gardiffmini.cli import main

main()
