"""The domain: routing, conversations, handoff, touchpoints, surveys, stats, knowledge.

Nothing in this package imports aiohttp or telegram.
"""
