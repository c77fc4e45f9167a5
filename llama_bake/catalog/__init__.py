"""The catalog: its typed models, the loader that reads catalog/, its schema, and authoring (add, pin, init)."""
