"""The REST API under ``/api/v1/``: small, explicit, and calling the same services as
the HTML views. Token or session auth; non-members get 404 like in the UI.

One module per resource, as ``annotator/views/`` has, each with its serializers beside
its views; ``urls`` routes them, ``errors`` answers every error as JSON. Nothing here
imports the HTML views: what both need lives in the app's own modules."""
