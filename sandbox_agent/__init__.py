"""The agent that runs inside the sandbox. It imports only ironclaw.contract from ironclaw.

    __main__      python -m sandbox_agent --config PATH; exit codes, one-line errors
    startup       reading the config file and the key file (never env or argv)
    agent         the task tree: heartbeat, doorbell, processing loop, signals
    doorbell      wake.sock client with reconnect backoff
    processing    one pass over inbound; the one-commit-per-turn rule lives here
    queue_io      the contract's queue handles, run on one worker thread
    turn          one turn: model, tools, model ... reply
    history       the transcript kept in session_state, bounded by whole turns
    messages      the provider-neutral transcript
    commands      /help, /status, /reset, answered without the model
    prompt        the safety preamble and the persona
    workspace     file access confined to the workspace
    selfcheck     --self-check: proves a (frozen) build imports and runs everything
    diagnostics   describing failures without their (possibly private) messages
    providers/    model-proxy client (retries, breaker) and the two wire shapes
    tools/        the compiled-in tools and their registry
"""
