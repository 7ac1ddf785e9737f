from fastmotion.cli import main

main()
