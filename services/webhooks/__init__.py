"""MLflow registry webhooks: a receiver that turns ``model_version.created`` into promotion requests.

signature (pure: MLflow's HMAC header, the timestamp window), events (pure: the payload), deliveries
(the processed delivery ids in the tower state), handler (what a verified delivery does), server
(the HTTP receiver, standard library), secret (where the shared secret comes from), commands
(``webhooks serve`` and ``webhooks register``).
"""
