"""Planning: who has an occasion worth marking today, and whether it should go out.

The pass clock and calendar arithmetic, the candidate queries, the pure occasion pickers
and policy (data and a date in, decisions out), the plan of a pass and the forecast.
"""
