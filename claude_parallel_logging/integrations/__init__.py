"""SDK integrations: each module maps one SDK's events onto a logged session."""
