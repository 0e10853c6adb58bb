from llmtrunc.lm_eval import main

main()
