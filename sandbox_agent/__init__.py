"""The agent that runs inside the sandbox. It imports only ironclaw.contract from ironclaw."""
