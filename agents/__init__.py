"""LangGraph agents that observe, reason, plan and act within guardrails."""
