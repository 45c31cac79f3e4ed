"""Stage 3, route: quiet timers decide when a series or study is complete; its kinds decide the routes."""
