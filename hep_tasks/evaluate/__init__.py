"""The evaluate stage: how well each trained classifier separates QCD, tt̄ and W+jets (ARCHITECTURE §4).

- ``histograms``  Spark side: per model, counts of test events per log-odds bin and the confusion
                  counts, in one aggregation each; only these small arrays reach the driver
- ``metrics``     NumPy: ROC curves, AUC, tt̄ efficiency at fixed QCD acceptance, accuracy and
                  confusion matrices from those counts; ``model_metrics`` gives the JSON-ready dict
- ``plots``       PNG figures (matplotlib, Agg canvas): ROC curves, confusion matrices, loss and
                  accuracy per epoch
- ``report``      one self-contained HTML page per run (tables and embedded plots)
- ``stage``       the Spark stage: score the test split with each model, compute metrics, write the report

Conventions: class labels 0 = QCD, 1 = tt̄, 2 = W+jets (:mod:`hep_tasks.processes`); the ROC score
of class k is the log-odds log(p_k / (1 − p_k)), dimensionless; rates and efficiencies are
fractions in [0, 1].
"""
