"""Who is acting: identities, roles, service accounts and the OIDC provider."""
