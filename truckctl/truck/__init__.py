"""The truck tier: Ansible (playbooks/) driven through ansible-runner.

`plan` decides what to run (pure), `runner` runs it, `events` turns runner events into
progress and a result. Nothing here prints; callers render through callbacks.
"""
