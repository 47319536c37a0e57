"""The queue in front of remote providers.

A provider account runs a fixed number of tasks at once (one for wan2.2-s2v,
three on WaveSpeed's first tier), so the studio is the queue: it fills each
account's slots with tasks, fairly between teams, and follows each task at
the provider until its result is in storage.

- `slots`: which tasks hold an account's slots, and `dispatch`, which claims
  queued jobs for the free ones (opening a task for each) under a row lock.
- `submit`: `job_submit` sends a claimed job's task; `free_slot` sends the
  next one the moment a task ends.
- `poll`: `job_poll` asks about a task and acts on the answer (store the
  result, queue again, fail); `job_cancel_remote` withdraws a pending task.
- `timing`: run times learned from history, poll plans, backoff.
- `accounts`: pausing an account the provider refused, and resuming it.
- `tick`: what the dispatcher process runs twice a second: fill slots, hand due
  polls to workers.
- `recovery`: the minute sweep's part: submits whose answer was lost.

Jobs end in studio.lifecycle; the ledger and budgets are studio.billing's.
"""
