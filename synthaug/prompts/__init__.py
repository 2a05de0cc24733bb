"""synthaug.prompts."""
