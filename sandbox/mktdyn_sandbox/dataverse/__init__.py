"""The Dataverse Web API and Entra authority half of the sandbox."""
