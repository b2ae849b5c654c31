use super::*;

#[test]
fn schema_objects_list_the_keys_the_decoder_accepts() {
    let s = schema();
    let keys = |v: &Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&s), TOP.keys(Spelling::Friendly));
    assert_eq!(
        keys(&s["properties"]["spec"]),
        SPEC.keys(Spelling::Friendly)
    );
}
