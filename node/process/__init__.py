"""Stage 4, process: jobs run in worker processes; each quantification module reads its inputs
(node/inputs/), calls analysis/ and builds dicom_out/ objects. `offline` is the same without a network."""
