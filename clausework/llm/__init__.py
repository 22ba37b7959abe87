"""Clause extraction through an OpenAI-compatible endpoint: planner, client, prompts, grounding."""
