//! The README's reference tables against what they describe: every template parameter with its
//! default, and every variable with the functions that read it.

use std::collections::BTreeSet;

use serde_norway::Value;
use spillway_core::config::Function;

fn readme() -> String {
    std::fs::read_to_string(spillway_tests::workspace_root().join("README.md")).unwrap()
}

/// The rows of the README table whose header row is `header`, as cells without backticks.
fn table(readme: &str, header: &str) -> Vec<Vec<String>> {
    let start = readme
        .find(header)
        .unwrap_or_else(|| panic!("the README has no table headed {header}"));
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

fn template_parameters() -> Vec<(String, String)> {
    let path = spillway_tests::workspace_root().join("infra/template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let Value::Mapping(parameters) = &template["Parameters"] else {
        panic!("the template has no Parameters");
    };
    parameters
        .iter()
        .map(|(name, declared)| {
            let default = match &declared["Default"] {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                other => panic!("{name:?}: a default of {other:?}"),
            };
            (name.as_str().unwrap().to_owned(), default)
        })
        .collect()
}

#[test]
fn the_readme_lists_every_template_parameter_with_its_default() {
    let readme = readme();
    let listed: BTreeSet<(String, String)> =
        table(&readme, "| parameter | default | what it sets |")
            .into_iter()
            .map(|row| {
                let default = if row[1] == "empty" {
                    String::new()
                } else {
                    row[1].clone()
                };
                (row[0].clone(), default)
            })
            .collect();
    let declared: BTreeSet<(String, String)> = template_parameters().into_iter().collect();
    assert_eq!(
        listed.difference(&declared).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "the README lists parameters (or defaults) the template does not declare"
    );
    assert_eq!(
        declared.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "the template declares parameters the README does not list (or with another default)"
    );
}

#[test]
fn the_readme_says_which_function_reads_each_variable() {
    let readme = readme();
    let mut listed = BTreeSet::new();
    for row in table(&readme, "| variable | meaning | read by | default |") {
        for variable in row[0].split(" / ") {
            for function in row[2].split(", ") {
                listed.insert((variable.to_owned(), function.to_owned()));
            }
        }
    }
    let read: BTreeSet<(String, String)> = Function::ALL
        .iter()
        .flat_map(|function| {
            function
                .variables()
                .iter()
                .map(|variable| ((*variable).to_owned(), function.binary().to_owned()))
        })
        .collect();
    assert_eq!(
        listed.symmetric_difference(&read).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "the README's configuration table and config::Function disagree"
    );
}
