from llama_bake.cli import main

main()
