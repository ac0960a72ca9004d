"""The ASGI server: secrets API, access control (challenge, ticket, rate limits), logging."""
