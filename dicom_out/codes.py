"""Coded concepts used in cmr-node's output objects, with their source.

| concept                     | scheme | value     | source                                              |
|-----------------------------|--------|-----------|-----------------------------------------------------|
| T1                          | DCM    | 113063    | PS3.16 CID 218 / 7180                               |
| Heart (anatomic region)     | SCT    | 80891009  | PS3.16 CID 4                                        |
| Percent (unit)              | UCUM   | %         | PS3.16 CID 7181                                     |
| Millisecond (unit)          | UCUM   | ms        | PS3.16 CID 7181                                     |
| Measurement Method          | SCT    | 370129005 | PS3.16 CID 9000                                     |
| Quantity                    | SCT    | 246205007 | written by highdicom in QuantityDefinitionSequence  |
| Myocardial ECV              | 99CMRN | ECV       | private: PS3.16 (2024c) has no code for ECV          |
| ECV from T1 (method)        | 99CMRN | ECV-T1    | private: (1-Hct) dR1_tissue / dR1_blood              |
| T1 by Inversion Recovery    | DCM    | 126351    | PS3.16 CID 4100 (method of the MOLLI T1 map)         |
| T2                          | DCM    | 113065    | PS3.16 CID 218 / 7180                                |
| Blood oxygen saturation     | LN     | 20564-1   | PS3.16 CID 3526 Blood Gas Saturation                 |
| Fit residual (relative)     | 99CMRN | RESID     | private: RMS residual / amplitude of a relaxometry fit |
| ve                          | DCM    | 126314    | PS3.16 CID 4107 Tracer Kinetic Model Parameter       |
| vp                          | DCM    | 126331    | PS3.16 CID 4107                                      |
| 2CX model (method)          | DCM    | 126347    | PS3.16 CID 4101 Tracer Kinetic Model                 |
| ve + vp                     | 99CMRN | VEVP      | private: no code for the total distribution volume   |
| PS                          | 99CMRN | PS        | private: OSIPI CAPLEX Q.PH1.004, no DICOM code        |
| Fp (plasma flow)            | 99CMRN | FP        | private: OSIPI CAPLEX Q.PH1.002; DCM 126390 is blood  |
| Fit R^2                     | DCM    | 126220    | PS3.16 CID 218 / 7180 "R2-Coefficient"               |
| No units (unit)             | UCUM   | 1         | PS3.16 CID 7181                                      |
| mL/min/g (unit)             | UCUM   | ml/min/g  | PS3.16 CID 7181                                      |
| mL, mm, mL/min (units)      | UCUM   | ml mm ml/min | UCUM; PS3.16 CID 7181 (ml/min), CID 7460 (mm)     |
| Mean / SD / Median          | SCT    | 373098007 / 386136009 / 373099004 | PS3.16 CID 7464 (derivation) |
| Volume                      | SCT    | 118565006 | PS3.16 CID 7469                                      |
| Sum of segmented voxels     | DCM    | 126030    | PS3.16 CID 7474 (method of a volume)                 |
| Procedure: MRI of heart     | SCT    | 241620005 | PS3.16 CID 3206 / 3820 (procedure reported)          |
| Left ventricle myocardium   | SCT    | 49848007  | PS3.16 CID 12305                                     |
| Left ventricle              | SCT    | 87878005  | PS3.16 CID 4 / 3010 (finding site of the blood pool) |
| Blood                       | SCT    | 87612001  | PS3.16 CID 7151 (finding type of blood pools)        |
| Coronary sinus              | SCT    | 90219004  | PS3.16 CID 4 / 3010                                  |
| Anatomical structure / Tissue | SCT  | 91723000 / 85756007 | PS3.16 CID 7150 (finding/segment category) |
| Segmentation Method         | DCM    | 122554    | PS3.16 DCM; values SCT 8359006 Automated / 87982008 Manual (CID 7230) |
| Analysis Quality Rating     | DCM    | 111693    | PS3.16 DCM; values DCM 111237 / 111236 / 111235 (CID 6044) |
| Patient motion              | DCM    | 128553    | PS3.16 CID 10034 (largest shift between maps, mm)    |
| Venous oxygen saturation    | LN     | 2711-0    | PS3.16 CID 3526 (SbO2, coronary sinus)               |
| Hematocrit                  | LN     | 20570-8   | PS3.16 CID 4110 Tracer Kinetic Modeling Covariate    |
| Oxygen consumption (MVO2)   | DCM    | 122239    | PS3.16 DCM "Oxygen Consumption"                      |
| Myocardial external efficiency | 99CMRN | MEE    | private: no standard code                            |
| Failed-fit fraction         | 99CMRN | FAILFRAC  | private: voxels whose fit failed / voxels fitted     |
| Myocardial infarction       | SCT    | 22298006  | PS3.16 CID 3121 (finding / SEG segment type)         |
| Morphologically abnormal structure | SCT | 49755003 | PS3.16 CID 7150 (segment category)               |
| Microvascular obstruction   | 99CMRN | MVO       | private: no SCT/DCM concept found (PS3.16 2024c)     |
| Infarct size (% of LV myocardium) | 99CMRN | INFSIZE | private                                           |
| Transmurality (mean radial extent) | 99CMRN | TRANSMUR | private; SCT 103354007 is only a qualifier   |
| MVO (% of LV myocardium)    | 99CMRN | MVOSIZE   | private                                              |
| CNR infarct-to-blood / -to-remote | 99CMRN | CNRIB / CNRIR | private: PS3.16 has Signal to noise, no CNR   |
| AHA segments 1-17           | SCT    | 264850008 ... 128564006 | PS3.16 CID 3717 "Left Ventricle Myocardial Wall 17 Segment Model" |
| Quality assessment (group)  | DCM    | 111050    | PS3.16 DCM "Quality Assessment" (finding type of the QC group) |
| Quality finding             | DCM    | 111052    | PS3.16 DCM "Quality Finding" (name of each QC evaluation) |
| Signal to noise ratio       | DCM    | 111787    | PS3.16 DCM (SNR of raw images)                       |
| QC findings                 | 99CMRN | QC-...    | private: PS3.16 has no codes for these findings      |

Private codes use the designator PRIVATE_SCHEME (a "99" prefix marks a
private scheme, PS3.16 section 8) and are declared in the object's Coding
Scheme Identification Sequence by `declare_private_scheme`.
"""
from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

PRIVATE_SCHEME = "99CMRN"
PRIVATE_SCHEME_NAME = "cmr-node private codes"
PRIVATE_SCHEME_RESPONSIBLE = "cmr-node project"

T1 = codes.DCM.T1
HEART = codes.SCT.Heart
# A measurement over the whole field of view (every fitted voxel), which is no tissue: CID 7151 has no code for
# "all of the image", DCM 111030 Image Region says what it is.
IMAGE_REGION = codes.DCM.ImageRegion
MEASUREMENT_METHOD = CodedConcept("370129005", "SCT", "Measurement Method")

UNIT_PERCENT = CodedConcept("%", "UCUM", "Percent")
UNIT_MS = CodedConcept("ms", "UCUM", "millisecond")

UNIT_NONE = CodedConcept("1", "UCUM", "no units")
UNIT_ML_PER_MIN_PER_G = CodedConcept("ml/min/g", "UCUM", "milliliter per minute per gram")

ECV = CodedConcept("ECV", PRIVATE_SCHEME, "Myocardial extracellular volume fraction")
T1_BY_INVERSION_RECOVERY = codes.DCM.T1ByInversionRecovery
T2 = codes.DCM.T2
BLOOD_OXYGEN_SATURATION = CodedConcept("20564-1", "LN", "Blood Oxygen saturation")
FIT_RESIDUAL = CodedConcept("RESID", PRIVATE_SCHEME, "Relative RMS residual of model fit")
VE = codes.DCM.Ve
VP = codes.DCM.Vp
TWO_COMPARTMENT_EXCHANGE = codes.DCM.TwoCompartmentExchange2CXModel
VE_PLUS_VP = CodedConcept("VEVP", PRIVATE_SCHEME, "Total distribution volume ve + vp")
PS = CodedConcept("PS", PRIVATE_SCHEME, "Permeability surface area product")
MBF = codes.DCM.AbsoluteRegionalBloodFlow   # DCM 126390: myocardial blood flow, mL/min/g
FP = CodedConcept("FP", PRIVATE_SCHEME, "Plasma flow")
FIT_R2 = codes.DCM.R2Coefficient
ECV_FROM_T1 = CodedConcept("ECV-T1", PRIVATE_SCHEME, "ECV from native and post-contrast T1")


def declare_private_scheme(ds: Dataset) -> None:
    """Add our private coding scheme to (0008,0110) Coding Scheme Identification Sequence."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_RESPONSIBLE
    existing = list(ds.get("CodingSchemeIdentificationSequence", []))
    if not any(i.get("CodingSchemeDesignator") == PRIVATE_SCHEME for i in existing):
        ds.CodingSchemeIdentificationSequence = existing + [item]


UNIT_ML = CodedConcept("ml", "UCUM", "milliliter")
UNIT_S = CodedConcept("s", "UCUM", "second")

# A 95 % interval as TID 310 Measurement Properties: offsets from the value (CID 225 Measurement Uncertainty).
UPPER_UNCERTAINTY = CodedConcept("371886008", "SCT", "+, range of upper measurement uncertainty")
LOWER_UNCERTAINTY = CodedConcept("371885007", "SCT", "-, range of lower measurement uncertainty")
YES = CodedConcept("373066001", "SCT", "Yes")   # CID 230 Yes-No
NO = CodedConcept("373067005", "SCT", "No")
MEAN_LAG = CodedConcept("LAG", PRIVATE_SCHEME, "Mean tracer lag of the 2CXM")   # first moment of its impulse response


def identifiable(quantity: CodedConcept) -> CodedConcept:
    """Private concept name of the qualitative evaluation 'this quantity is identified by the data' (Yes/No):
    PS3.16 has no concept of identifiability."""
    return CodedConcept(f"ID-{quantity.value}"[:16], PRIVATE_SCHEME, f"{quantity.meaning} identifiable"[:64])


def confidence_limit(quantity: CodedConcept, upper: bool) -> CodedConcept:
    """Private concept of one end of a 95 % interval when there is no value to hang TID 310 offsets on (a
    parameter the data bound on one side only): PS3.16 has no concept of a one-sided confidence limit."""
    side = "Upper" if upper else "Lower"
    return CodedConcept(f"{side[0]}CL95-{quantity.value}"[:16], PRIVATE_SCHEME,
                        f"{side} 95% confidence limit of {quantity.meaning}"[:64])
UNIT_MM = CodedConcept("mm", "UCUM", "millimeter")
UNIT_ML_PER_MIN = CodedConcept("ml/min", "UCUM", "milliliter per minute")

MEAN = codes.SCT.Mean
STANDARD_DEVIATION = codes.SCT.StandardDeviation
MEDIAN = codes.SCT.Median
VOLUME = codes.SCT.Volume
SUM_OF_SEGMENTED_VOXELS = codes.DCM.SumOfSegmentedVoxelMethodForVolume
CARDIAC_MRI = codes.SCT.MagneticResonanceImagingOfHeart

LV_MYOCARDIUM = codes.SCT.LeftVentricleMyocardium
LEFT_VENTRICLE = codes.SCT.LeftVentricle
RIGHT_VENTRICLE = codes.SCT.RightVentricle
BLOOD = codes.SCT.Blood
CORONARY_SINUS = codes.SCT.CoronarySinus
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
TISSUE = codes.SCT.Tissue
SPATIAL_AND_RELATIONAL_CONCEPT = codes.SCT.SpatialAndRelationalConcept   # CID 7150: a region defined by a property

SEGMENTATION_METHOD = codes.DCM.SegmentationMethod
AUTOMATED = codes.SCT.Automated
MANUAL = codes.SCT.Manual
ANALYSIS_QUALITY = codes.DCM.AnalysisQualityRating
QUALITY_MEETS_STANDARD = CodedConcept("111237", "DCM", "Usable - Meets the quality control standard")
QUALITY_BELOW_STANDARD = CodedConcept("111236", "DCM", "Usable - Does not meet the quality control standard")
QUALITY_UNUSABLE = CodedConcept("111235", "DCM", "Unusable - Quality renders image unusable")
PATIENT_MOTION = codes.DCM.PatientMotion

VENOUS_OXYGEN_SATURATION = CodedConcept("2711-0", "LN", "Venous Oxygen saturation")
HEMATOCRIT = CodedConcept("20570-8", "LN", "Hematocrit")
OXYGEN_CONSUMPTION = codes.DCM.OxygenConsumption
EXTERNAL_EFFICIENCY = CodedConcept("MEE", PRIVATE_SCHEME, "Myocardial external efficiency")
FAILED_FIT_FRACTION = CodedConcept("FAILFRAC", PRIVATE_SCHEME, "Fraction of voxels whose model fit failed")
DEVICE = codes.DCM.Device
MYOCARDIAL_INFARCTION = codes.SCT.MyocardialInfarction
ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure
MVO = CodedConcept("MVO", PRIVATE_SCHEME, "Microvascular obstruction")
INFARCT_SIZE = CodedConcept("INFSIZE", PRIVATE_SCHEME, "Infarct size as percent of LV myocardium")
TRANSMURALITY = CodedConcept("TRANSMUR", PRIVATE_SCHEME, "Mean transmural extent of infarct")
MVO_SIZE = CodedConcept("MVOSIZE", PRIVATE_SCHEME, "Microvascular obstruction as percent of LV myocardium")
# per AHA segment: the hyperenhanced share of the segment's myocardium, the extent Kim et al. (NEJM
# 2000;343:1445) score in 0 / 1-25 / 26-50 / 51-75 / 76-100 % classes; no standard concept exists
SEGMENT_INFARCT_EXTENT = CodedConcept("INFSEG", PRIVATE_SCHEME, "Infarct extent as percent of segment myocardium")
CNR_INFARCT_BLOOD = CodedConcept("CNRIB", PRIVATE_SCHEME, "Contrast-to-noise ratio infarct to blood")
CNR_INFARCT_REMOTE = CodedConcept("CNRIR", PRIVATE_SCHEME, "Contrast-to-noise ratio infarct to remote myocardium")


# PS3.16 CID 3717 (pydicom 2024c dictionary): the AHA 17-segment model (Cerqueira et al., Circulation
# 2002;105:539), by segment number
AHA_SEGMENTS = {n: getattr(codes.SCT, keyword) for n, keyword in enumerate((
    "LeftVentricleBasalAnteriorSegment", "LeftVentricleBasalAnteroseptalSegment",
    "LeftVentricleBasalInferoseptalSegment", "LeftVentricleBasalInferiorSegment",
    "LeftVentricleBasalInferolateralSegment", "LeftVentricleBasalAnterolateralSegment",
    "LeftVentricleMidAnteriorSegment", "LeftVentricleMidAnteroseptalSegment", "LeftVentricleMidInferoseptalSegment",
    "LeftVentricleMidInferiorSegment", "LeftVentricleMidInferolateralSegment", "LeftVentricleMidAnterolateralSegment",
    "LeftVentricleApicalAnteriorSegment", "LeftVentricleApicalSeptalSegment", "LeftVentricleApicalInferiorSegment",
    "LeftVentricleApicalLateralSegment", "ApexOfLeftVentricle"), start=1)}

QUALITY_ASSESSMENT = codes.DCM.QualityAssessment
QUALITY_FINDING = codes.DCM.QualityFinding
SIGNAL_TO_NOISE_RATIO = codes.DCM.SignalToNoiseRatio
# by analysis/quality.py check name
QC_FINDINGS = {
    "motion": CodedConcept("QC-MOTION", PRIVATE_SCHEME, "Motion between maps above the limit"),
    "fit": CodedConcept("QC-FIT", PRIVATE_SCHEME, "Poor model fit in the myocardium"),
    "snr": CodedConcept("QC-SNR", PRIVATE_SCHEME, "Signal-to-noise ratio below the limit"),
    "blood_t1": CodedConcept("QC-BLOODT1", PRIVATE_SCHEME, "Blood T1 outside the physiological range"),
    "missing": CodedConcept("QC-MISSING", PRIVATE_SCHEME, "Part of the protocol missing"),
    "region": CodedConcept("QC-REGION", PRIVATE_SCHEME, "Region not found"),
}
NO_QUALITY_FINDING = CodedConcept("QC-NONE", PRIVATE_SCHEME, "No quality finding")
