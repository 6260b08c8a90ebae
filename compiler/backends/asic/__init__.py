"""The ASIC target: a threshold-logic netlist (tl/) and a CMOS standard-cell baseline (cmos/)."""
