// SCIM User response converter, corrected: FusionAuth user -> SCIM User JSON.
// As the default (data/lambdas/scim-user-response.js), and also returns the
// displayName, title, locale and preferredLanguage that the corrected request
// lambda keeps in user.data.
function convert(scimUser, user) {
  var data = user.data || {};
  scimUser.active = user.active;
  scimUser.userName = user.username;
  scimUser.name = {
    givenName: user.firstName,
    familyName: user.lastName,
    middleName: user.middleName,
    formatted: user.fullName,
    honorificPrefix: data.honorificPrefix,
    honorificSuffix: data.honorificSuffix
  };
  scimUser.displayName = data.displayName;
  scimUser.title = data.title;
  scimUser.locale = data.locale;
  scimUser.preferredLanguage = data.preferredLanguage;

  if (user.email) {
    scimUser.emails = [{primary: true, value: user.email, type: "work"}];
  }
  if (user.mobilePhone) {
    scimUser.phoneNumbers = [
      {primary: true, value: user.mobilePhone, type: "mobile"}
    ];
  }

  var extensions = data.extensions || {};
  Object.keys(extensions).forEach(function (urn) {
    if (scimUser.schemas.indexOf(urn) === -1) {
      scimUser.schemas.push(urn);
    }
    scimUser[urn] = extensions[urn];
  });
}
