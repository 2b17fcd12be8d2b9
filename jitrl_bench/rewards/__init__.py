"""Where the rewards memory stores come from: the env's own score deltas (`reward=env`), or an LLM that reads the
finished episode and scores every step (`reward=llm`, the paper's protocol). A reward source runs once per finished
episode, after it ends: never inside one."""
