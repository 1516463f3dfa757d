//! Real-shaped meter payloads shared by the decoder and MQTT tests.

#![allow(dead_code)]

/// Tasmota SML reader: import/export counters in kWh, power in W (export negative).
pub const TASMOTA_SML: &str = r#"{"Time":"2022-07-07T13:01:11","SML":{"Total_in":34507.4761,"Total_out":14737.1422,"Power_curr":-894,"Meter_id":"0a01445a"}}"#;
/// Tasmota plug: ENERGY Total in kWh, Power in W.
pub const TASMOTA_PLUG: &str = r#"{"Time":"2024-05-01T10:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00","Total":196.708,"Yesterday":0.512,"Today":0.101,"Power":0,"ApparentPower":0,"ReactivePower":0,"Factor":0.00,"Voltage":231,"Current":0.000}}"#;
/// Shelly Pro 3EM `status/em:0`: total_act_power in W.
pub const SHELLY_EM: &str = r#"{"id":0,"a_current":4.029,"a_voltage":236.1,"a_act_power":-951.2,"a_aprt_power":951.9,"a_pf":-1.0,"b_current":0.2,"b_act_power":12.1,"c_current":0.3,"c_act_power":25.6,"n_current":null,"total_current":4.529,"total_act_power":-913.5,"total_aprt_power":1010.4,"user_calibrated_phase":[]}"#;
/// Shelly Pro 3EM `status/emdata:0`: total_act / total_act_ret in Wh.
pub const SHELLY_EMDATA: &str = r#"{"id":0,"a_total_act_energy":2776.14,"a_total_act_ret_energy":829.56,"b_total_act_energy":400.2,"c_total_act_energy":300.1,"total_act":3476.44,"total_act_ret":829.56}"#;
/// DSMR-reader `dsmr/json`: two tariffs each way in kWh (strings and numbers), current power in kW.
pub const DSMR_READER: &str = r#"{"id":1234,"read_at":"2024-05-01T10:00:00+02:00","electricity_delivered_1":"1234.567","electricity_returned_1":"12.345","electricity_delivered_2":2345.678,"electricity_returned_2":23.456,"electricity_currently_delivered":0.412,"electricity_currently_returned":0.0,"phase_currently_delivered_l1":0.412,"extra_device_timestamp":null,"extra_device_delivered":"789.012"}"#;
/// zigbee2mqtt plug: power in W, energy in kWh.
pub const ZIGBEE2MQTT: &str = r#"{"child_lock":"UNLOCK","current":0.21,"energy":12.34,"indicator_mode":"off/on","linkquality":98,"power":48,"power_outage_memory":"restore","state":"ON","voltage":229}"#;
