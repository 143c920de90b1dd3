"""Clients of the reward service (:mod:`scoring.reward_service`) for RL trainers that call a
Python function rather than a URL: :mod:`.trl` (``GRPOTrainer(reward_funcs=[...])``) and
:mod:`.verl` (``custom_reward_function.path``, and a dense reward manager). Both speak the
native ``POST /v1/rewards`` through :class:`.http.RewardClient`. OpenRLHF needs no client:
its ``--remote_rm_url`` points at the service's ``/get_reward``.
"""
