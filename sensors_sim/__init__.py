"""The city simulator: realistic readings, incidents, sensor faults and their ground truth.

>>> from config.city import load_city
>>> from sensors_sim.scenario import load_scenario
>>> from sensors_sim.engine import Simulator
>>> sim = Simulator(load_city(), load_scenario("rush_hour_crash"), seed=7)
>>> [lab.type for lab in sim.labels]
['crash']

See ``docs/simulator.md``.
"""
