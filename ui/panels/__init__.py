"""The dock's panels, one file each: inputs, area, parameters, run, results."""
