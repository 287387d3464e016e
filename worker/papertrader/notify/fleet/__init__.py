"""`papertrader notifier`: the one Telegram bot of the fleet (the only holder of the token, the only getUpdates
consumer). Workers POST their notifications to it (notify/forward.py); it applies the policy of
:class:`~papertrader.notify.outbox.Outbox` for the whole fleet and answers the chat's commands from the workers'
/health and the PaperTraders in the Kubernetes API."""
