"""Quality on ground truth (`unde eval`) and thresholds from logs (`unde calibrate`).

- `run`: start the local stack per search-backend configuration, recognize labelled photos, score.
- `report`: the side-by-side JSON report and its HTML page (inline SVG plots).
- `calibrate` / `calibration_report`: threshold sweeps and recommendations from labelled garments.
"""
