"""Operating the platform: verify, deploy, serve, automations, the self-healing drill."""
