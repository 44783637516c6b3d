"""System prompts of the model-backed stages, one versioned file per stage; loaded by `agents.prompt_templates`."""
