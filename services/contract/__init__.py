"""What training and serving share: the bundle and its manifest, the feature definitions,
vocabularies, domain types and errors, the item catalog and table, model inputs. Imports
nothing from services.platform or any service."""
